"""Soak: the channel, the bridge and the Stage hammered at once, round after round, on asyncio,
asyncio + uvloop and trio (each on its own thread with its own loop), plain threads and the
main thread, with cancellations, timeouts, Ctrl-C, client and server closes and raising
handlers; then memory must stay flat and nothing of asyncmp may stay alive.

Each round builds everything afresh:

- **Channels.** ``plain``: a `Server` served by tasks on every loop and a plain thread, which
  reply, fail, close unanswered, raise inside ``with rctx:``, drop the context or hand it to
  another thread to answer later; the server is closed midway in every other round, and it
  is bounded (``max_queued``) in every third. ``thread``: an `asyncmp.thread.spawn` loop
  whose handler raises now and then (an ``on_error`` callable: the loop goes on).
  ``task``: an `asyncmp.task.spawn` loop on the uvloop thread whose handler raises too
  (the same ``on_error``, or ``"stop"`` in every other round, which closes that server).
  Clients on every loop, on plain threads and on the main thread send, time out, are
  cancelled (anyio scopes, sibling tasks, bare asyncio ``Task.cancel``), cancel or drop
  pending replies, close their clients midway and are interrupted by a real SIGINT.
- **Bridge.** A `Sender` fans out to two `Receiver` s and a `DirectSender` feeds the first;
  senders on threads and loops, consumers on every loop, threads and the main thread receive
  with and without timeouts, cancelled, by ``try_recv`` and interrupted.
- **Stage.** A stage whose resource is a bridge receiver of ``(token, seq)`` events, which
  the main thread sends a few at a time all round long: each participant (on every loop,
  threads and the main thread) heads in turn, routes the others' events through the buffer
  and waits, with and without timeouts, cancelled and interrupted.

Checks, after every round: every request ended exactly once and the server's view agrees
(`check_channels`); every bridge message reached each receiver it was sent to exactly once;
every Stage event reached its token exactly once, every waiter finished, and a final enter
with a short timeout heads the stage. After the warm-up round, traced memory and the number
of live objects must not grow round over round beyond a small bound, and no asyncmp object
(nor any asyncio future) is left alive after any round.

The random choices are seeded (``ASYNCMP_SOAK_SEED`` overrides the seed, printed on failure);
thread scheduling is not, so a failure may need a few runs to recur. Every wait is bounded
and no assertion depends on timing: timeouts and cancellations only make the mix. The size
is set by `ROUNDS`, `REQUESTS`, `MESSAGES` and `EVENTS` (``_round.py``).

The modules: ``_round.py`` (the size, the bounds and the round's ledgers), ``_channels.py``,
``_bridge.py`` and ``_stage.py`` (each part's workers), ``_interrupts.py`` (the main thread's
Ctrl-C), ``_run.py`` (one round), ``_checks.py`` (what a round must show), ``test_soak.py``
(the soak) and ``test_found.py`` (what the soak found, made deterministic).
"""
