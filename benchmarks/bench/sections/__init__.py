"""The measured sections, one module each, in the order of the report:

1. :mod:`.lookup`: the call-start lookup next to a bare ``GET``;
2. :mod:`.save`: the end-of-call save, without the LLM;
3. :mod:`.concurrency`: :data:`~..env.CONCURRENT` call starts at once;
4. :mod:`.memory`: the Redis memory held per caller;
5. :mod:`.calls`: the commands of one ordinary call, end to end;
6. :mod:`.first_reply`: the time the plugin adds to an ``AgentSession``'s first reply.

Each exposes one ``bench_*(env, plan, report)`` coroutine that adds its rows (and targets) to
the :class:`~..env.Report`.
"""
