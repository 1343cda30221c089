/** The four versions of `fulfilOrder`, by the name the worker takes on its command line. */
import { workflows as v1 } from "./v1.js";
import { workflows as v2 } from "./v2-patched.js";
import { workflows as v3 } from "./v3-deprecated.js";
import { workflows as v4 } from "./v4-removed.js";

export const versions = { v1, v2, v3, v4 };
export type VersionName = keyof typeof versions;

export function isVersionName(name: string | undefined): name is VersionName {
  return name !== undefined && Object.hasOwn(versions, name);
}
