"""Measuring restorations: synthetic test sets (``authface degrade``) and metrics with reports
(``authface evaluate``). See :mod:`.synthetic`, :mod:`.evaluate` and :mod:`.report`."""
