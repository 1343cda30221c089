import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { createTestDatabase, type TestDatabase } from "@dex/testing";
import { DedupKind, dedupId, dedupKey, dedupPrefix, dedupSeq, OPEN_STATUSES, RunStatus, UNSUCCESSFUL_STATUSES } from "../src/engine/model.js";
import { dedupPrefixSql, openStatuses, unsuccessfulStatuses } from "../src/store/vocabulary.js";

describe("dedup keys: built and parsed by one definition", () => {
  it("round-trips every kind, and a key of one kind is not read as another", () => {
    for (const kind of Object.values(DedupKind)) {
      const key = dedupKey(kind, 42);
      expect(key.startsWith(dedupPrefix(kind))).toBe(true);
      expect(dedupSeq(kind, key)).toBe(42);
      expect(dedupId(kind, key)).toBe("42");
      for (const other of Object.values(DedupKind)) if (other !== kind) expect(dedupId(other, key)).toBeUndefined();
    }
  });

  it("keeps an event id whole, colons included, and refuses a non-numeric seq", () => {
    const key = dedupKey(DedupKind.EVENT, "order:17:paid");
    expect(key).toBe("event:order:17:paid");
    expect(dedupId(DedupKind.EVENT, key)).toBe("order:17:paid");
    expect(dedupSeq(DedupKind.EVENT, key)).toBeUndefined();
    expect(dedupSeq(DedupKind.SEQ, "seq:")).toBeUndefined();
    expect(dedupSeq(DedupKind.SEQ, "seq:1x")).toBeUndefined();
  });

  it("keeps the formats stored histories already hold", () => {
    // A changed spelling would let an input stored under the old key reach the run a second time.
    expect([DedupKind.SEQ, DedupKind.TIMER, DedupKind.EVENT, DedupKind.ACTIVITY_RESULT, DedupKind.CHILD_START, DedupKind.CHILD_END].map((k) => dedupKey(k, 3))).toEqual([
      "seq:3",
      "timer:3",
      "event:3",
      "activity-result:3",
      "child-start:3",
      "child-end:3",
    ]);
  });
});

describe("the SQL spelling of the vocabulary", () => {
  let db: TestDatabase;
  let sql: postgres.Sql;
  beforeAll(async () => {
    db = await createTestDatabase();
    sql = postgres(db.url, { max: 1, onnotice: () => {} });
  });
  afterAll(async () => {
    await sql.end();
    await db.drop();
  });

  it("spells the same statuses and prefixes as engine/model.ts", async () => {
    const all = Object.values(RunStatus);
    const [row] = await sql<{ open: string[]; unsuccessful: string[]; timer: string; event: string }[]>`
      select array(select s from unnest(${all}::text[]) s where s in ${openStatuses(sql)}) as open,
             array(select s from unnest(${all}::text[]) s where s in ${unsuccessfulStatuses(sql)}) as unsuccessful,
             ${dedupPrefixSql(sql, DedupKind.TIMER)} || 7 as timer,
             ${dedupPrefixSql(sql, DedupKind.EVENT)} || 'a:b' as event`;
    expect(row!.open).toEqual([...OPEN_STATUSES]);
    expect(row!.unsuccessful).toEqual([...UNSUCCESSFUL_STATUSES]);
    expect(row!.timer).toBe(dedupKey(DedupKind.TIMER, 7));
    expect(row!.event).toBe(dedupKey(DedupKind.EVENT, "a:b"));
  });

  it("a statement with a vocabulary fragment is prepared once and reused", async () => {
    // postgres.js keys prepared statements by text: the fragment must not make the text vary per call.
    for (let i = 0; i < 3; i++) await sql`select count(*) from dex.runs where instance_id = ${`i${i}`} and status in ${openStatuses(sql)}`;
    const [row] = await sql<{ n: number }[]>`
      select count(*)::int as n from pg_prepared_statements
      where statement like '%from dex.runs where instance_id = $1 and status in (''CREATED'', ''RUNNING'')%'`;
    expect(row!.n).toBe(1);
  });

  it("the open-status list is the predicate of the partial unique index a start's ON CONFLICT names", async () => {
    const [row] = await sql<{ def: string }[]>`
      select pg_get_indexdef('dex.runs_one_open_run_per_instance'::regclass) as def`;
    // Postgres prints the predicate in its own form: status = ANY (ARRAY['CREATED'::text, 'RUNNING'::text]).
    expect(row!.def).toContain(`ARRAY[${OPEN_STATUSES.map((s) => `'${s}'::text`).join(", ")}]`);
  });
});
