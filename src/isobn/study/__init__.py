"""Seed studies: a TOML file declares tasks x sizes x methods x seeds; cells run resumably
in parallel and RESULTS.md reports paired statistics (see isobn.study.spec and .runner)."""
