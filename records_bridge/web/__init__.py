"""The records bridge's HTTP edge (aiohttp): the app, its shared web layer
(settings, context, pages, sessions, CSRF, security headers, rate limits) and
the patient's account pages. Feature modules add their routes through
``setup(app, ctx)`` (see ``app.build_app``)."""
