import { fileURLToPath } from "node:url";

/** Directory holding the .proto sources (dex/v1/*.proto), for reflection and other-language stubs. */
export const protoRoot: string = fileURLToPath(new URL("..", import.meta.url));
