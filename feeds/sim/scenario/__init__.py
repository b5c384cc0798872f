"""A deterministic, seeded generator of the 10/11 collapse (and calm nuisance days) over
four venues speaking their real protocols: written as a recording with ``labels.json``
(:func:`~feeds.sim.scenario.writer.write_scenario`), or played live on the local exchange
(:mod:`feeds.sim.scenario.live`)."""
