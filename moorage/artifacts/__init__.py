"""Model data by URL (local path, file:// or s3://) -> a local directory, cached by digest
(``fetch``), and async inference payloads and results by URL (``objects``).

Nothing is imported here: instance processes use ``objects`` and must not pay for s3fs."""
