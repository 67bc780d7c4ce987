"""``jaxmia dp-audit``: its pipeline, report and command line."""

__all__: list[str] = []
