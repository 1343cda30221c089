// Version 2 made safe for the runs version 1 started: the check only for runs started as version 2.
export default {
  async approval(ctx, input) {
    const steps = ctx.activities({ startToCloseTimeout: "30s" });
    await steps.reserve(input.id);
    if (input.version >= 2) await steps.check(input.id);
    return ctx.waitForEvent("approved");
  },
  async greeting(ctx) {
    return ctx.waitForEvent("hello");
  },
};
