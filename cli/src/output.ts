/** How the CLI prints: readable tables for people, --json for machines. */

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, jsonReplacer, 2)}\n`);
}

function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  return value;
}

/** A plain text table with a header row; columns sized to their widest cell. */
export function printTable(headers: string[], rows: string[][]): void {
  if (rows.length === 0) {
    process.stdout.write("(none)\n");
    return;
  }
  const widths = headers.map((header, i) => Math.max(header.length, ...rows.map((row) => (row[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  process.stdout.write(`${line(headers)}\n`);
  for (const row of rows) process.stdout.write(`${line(row)}\n`);
}

/** Key/value lines, aligned. */
export function printFields(fields: Array<[string, string | undefined]>): void {
  const present = fields.filter((entry): entry is [string, string] => entry[1] !== undefined && entry[1] !== "");
  const width = Math.max(...present.map(([key]) => key.length));
  for (const [key, value] of present) process.stdout.write(`${`${key}:`.padEnd(width + 2)}${value}\n`);
}

export function formatTime(date: Date | undefined): string | undefined {
  return date ? date.toISOString() : undefined;
}

export function formatValue(value: unknown): string {
  return value === undefined ? "" : JSON.stringify(value);
}
