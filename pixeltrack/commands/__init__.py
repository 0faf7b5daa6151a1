"""The `pixeltrack` command's handlers by area; pixeltrack/cli.py holds the parser and main.

- run.py: the long-running processes (serve, edge, process, api, triggers, dashboard): they call the
  composition root, pixeltrack/compose/
- data.py: reading and erasing what ClickHouse holds (query, report, forget, classify)
- setup.py: keys, tenants, schema and settings (keygen, link, tenants, dnt-hash, migrate, ddl, settings)
- networks.py: the network lists (networks build, networks status)

The sender's commands (instrument, sends) are pixeltrack/sender/instrument_cli.py.
Handlers import what they run inside the function, so `pixeltrack --help` loads no processor module and
the compiled hot path is chosen (schemas.native) before a hot module loads.
"""
