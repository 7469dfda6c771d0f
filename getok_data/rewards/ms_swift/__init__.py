"""ms-swift's reward plugin lives here alone: ``--external_plugins`` puts this folder on ``sys.path``,
so no module beside it may share a name with a package (``trl``, ``swift``)."""
