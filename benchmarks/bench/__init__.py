"""Benchmark of livekit-plugins-caller-memory against a private Redis server.

One command measures what caller memory costs a voice agent, prints a markdown report and
writes it into ``docs/PERFORMANCE.md``:

0. the whole call start (``SessionManager.start_session``) of callers picked at random from
   ``--callers`` callers with five calls kept (and a fifth as many with one), next to a bare
   ``GET``, with its steps timed one by one;
1. the call-start lookup (``store.lookup``) of a returning and of a new caller, back-to-back and
   sporadic (one every ~5 ms), next to a bare ``GET`` on the store's own client, with the round
   trips and commands each one costs;
2. the end-of-call save (``store.save_call``) of a 10-turn call, without the LLM;
3. 200 call starts at once (``asyncio.gather`` of 200 lookups), repeated;
4. the Redis memory held per caller at ``--callers`` callers (90-day data, five calls and one
   call kept) and per finished call (24-hour data), with the profiles' size distribution
   (run first: it writes the callers section 0 looks up);
5. the commands of one ordinary call end to end (``SessionManager`` start, 10 turns, end);
6. the time the plugin adds to the first reply of a text-mode ``AgentSession``.

It starts its own Redis (``EmbeddedRedis`` on a free port, no persistence) and never touches
another server. Run it from the repository root::

    .venv/bin/python -m benchmarks.bench                  # full run, 2-3 min; writes the doc
    .venv/bin/python -m benchmarks.bench --quick          # ~30 s smoke run; prints only
    .venv/bin/python -m benchmarks.bench --callers 20000 --out /tmp/perf.md

Options:
    --quick: Fewer iterations and 10,000 callers. The report is printed, not written, unless
        ``--out`` is given.
    --callers N: Callers written for the memory measurement (default 100,000; 10,000 quick).
    --out PATH: Where the report goes (default ``docs/PERFORMANCE.md`` for a full run). The
        report replaces the text between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``
        and leaves the rest of the file (the hand-written analysis) alone; a missing file is
        created. ``--out -`` writes nothing.
    --seed N: Seed of the generated callers (default 7).

How things are counted:
    * Round trips: the benchmark wraps ``send_packed_command`` on every connection of the
      store's own connection pool (in this process only, nothing in the plugin changes) and
      counts the calls: each is one write to the socket followed by a wait for the reply. The
      written bytes are parsed as RESP to name the commands the client sent. The server's
      ``total_reads_processed`` (``INFO stats``) is shown next to it as a cross-check.
    * Commands: ``INFO commandstats`` deltas on the server, read by a separate admin
      connection (its own ``INFO`` calls are left out). Commands run inside a Lua script are
      counted there too, so a save shows ``EVALSHA`` plus what the script ran.

Modules:
    * :mod:`.__main__`: the command line, and the run: server, clients, sections in order;
    * :mod:`.env`: the plan of a run, its environment, the findings, the constants;
    * :mod:`.sections`: one module per measured section (0-6 above);
    * :mod:`.data`: the synthetic callers, summaries, transcripts, and seeding;
    * :mod:`.stats`: latency distributions, percentiles, table cells;
    * :mod:`.wire`: round trips and commands, client and server side;
    * :mod:`.machine`: the machine, versions, git state, CPU used by others;
    * :mod:`.report`: the markdown report and where it is written.
"""
