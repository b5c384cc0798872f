"""History: PostgreSQL/TimescaleDB storage of the tick samples.

- :mod:`monitor.store.embedded`: the embedded server used when no DSN is configured;
- :mod:`monitor.store.migrate`: versioned migrations (plain and TimescaleDB flavours);
- :mod:`monitor.store.writer`: the store sink (batched COPY, memory bound, spill file);
- :mod:`monitor.store.queries`: what ``liqmon query`` asks;
- :mod:`monitor.store.service`: one call that gives a ready database to a command.
"""
