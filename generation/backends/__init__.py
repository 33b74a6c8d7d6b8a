"""Model backends: a batch of chat prompts in, one completion per prompt out.

A backend is loaded once per worker process (``loading.backend_for``) and kept: loading a model costs seconds to
minutes, a generation call milliseconds to seconds.

- ``base.py``: what every backend takes and gives (``SamplingParams``, ``Completion``, the ``Backend`` protocol).
- ``local.py``: ``TransformersBackend`` runs a model in this process (the bundled model, a local directory or the
  local cache); ``decoding.py`` is how it decodes a batch, imported only when a model is loaded.
- ``server.py``: ``OpenAIBackend`` posts each prompt to an OpenAI-compatible ``/chat/completions`` server (vLLM,
  TGI), retrying only on named transient errors.
- ``loading.py``: ``backend_for``, the backend of a model spec. A spec reaches only the servers in
  ``PSYROOM_MODEL_SERVERS`` and sends only the keys of ``PSYROOM_MODEL_CREDENTIALS`` (``generation.validators``),
  checked again each time a worker loads one.
"""
