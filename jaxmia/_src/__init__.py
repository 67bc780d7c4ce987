"""jaxmia's internals, one subpackage per concept (engine, attacks, audit, ...).

The public surface is the modules outside ``_src`` (``jaxmia.engine``,
``jaxmia.attacks``, ...), which re-export what a user imports. Any jaxmia module
may import from here; nothing outside jaxmia should.
"""

__all__: list[str] = []
