"""The code Lambda runs, cut by layer (imports point down only; pyproject.toml's import-linter
contracts hold it so): ``handlers`` (entry points), ``service`` (use cases), ``store`` and ``aws``
(adapters), ``ports`` (protocols), ``engine`` (pure decisions), ``documents`` (stored shapes and
every field), ``definition`` (the IR and the build-time loader), and the leaves: ``statuses``,
``clock``, ``errors``, ``limits``, ``contracts``, ``patterns``. Public modules: ``client`` (for
scripts) and ``job`` (for job handlers). Never imports aws_cdk."""
