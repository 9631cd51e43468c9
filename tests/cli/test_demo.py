"""`isobn demo`'s figures step on tiny untrained checkpoints (the full demo loads MiniLM)."""

from pathlib import Path

from isobn.analysis import embed, load_examples, parse_model_spec
from isobn.cli import demo
from isobn.cli.main import main
from isobn.training.model import ModelConfig, build_model, save_checkpoint
from isobn.training.pretrained import load_tokenizer

PNG_HEADER = b"\x89PNG\r\n\x1a\n"


def test_picture_writes_the_papers_figures(tmp_path, tiny_bert, sentiment_files, capsys):
    run_dirs = {}
    for norm in demo.NORMS:  # a run directory with a best/ checkpoint, as `isobn train` leaves
        config = ModelConfig(encoder=tiny_bert, num_labels=2, pooling="cls", method=norm)
        run_dirs[norm] = tmp_path / "runs" / norm
        save_checkpoint(build_model(config), load_tokenizer(tiny_bert), run_dirs[norm] / "best")
    settings = {**demo.DEMO_SETTINGS, "model": tiny_bert, "max_length": 32}
    cfg = demo.analysis_config(tmp_path, settings)
    cfg.train_file, cfg.dev_file = sentiment_files["train"], sentiment_files["dev"]
    task, examples, split = load_examples(cfg)
    pretrained = embed(parse_model_spec(cfg.models[0]), examples, pooling="all", max_length=32)

    demo.picture(cfg, task.name, split, examples, pretrained, run_dirs, "cpu")

    printed = capsys.readouterr().out
    analysis = Path(cfg.out).resolve()
    for name in ("std_histogram.png", "correlation.png", "spectrum.png", "report.md"):
        assert (analysis / name).is_file()
        assert str(analysis / name) in printed or name in printed
    assert (analysis / "std_histogram.png").read_bytes()[:8] == PNG_HEADER
    assert "| fine-tuned with IsoBN (after IsoBN) |" in printed
    text = (analysis / "report.md").read_text()
    assert "| metric | pre-trained | fine-tuned | fine-tuned with IsoBN (before norm) |" in text


def test_unwritable_out_is_one_line_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["demo", "--out", str(blocker / "demo")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("isobn demo: error: cannot write to output directory") and "\n" not in err
