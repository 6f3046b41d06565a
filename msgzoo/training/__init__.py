"""The training core: methods as assemblies of modules and losses (``methods``), how trained policies are read
(``evaluation``) and the loop every recipe shares (``trainer``)."""
