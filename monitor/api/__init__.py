"""The HTTP API, the live push, the operations endpoints and the page (``liqmon run``/``serve``)."""
