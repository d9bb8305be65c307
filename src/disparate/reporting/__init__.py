"""One reporting stack: the formatters of every number a report shows (:mod:`.format`) and
one small document model rendered to Markdown and to self-contained HTML (:mod:`.document`).
Run, comparison, study and federated reports all build a :class:`~.document.Document`."""
