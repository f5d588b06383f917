"""The pure reconcile core: from a model, its HardwareClass and what was observed, to the
objects that should exist and the status that should be shown. No I/O here."""
