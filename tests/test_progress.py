"""Progress bars are on interactively and off under the pipeline runner, even in a notebook."""

from matdiscovery.progress import PIPELINE_ENV, progress_bar, progress_enabled


def test_progress_bars_follow_the_runner_not_tqdm_defaults(monkeypatch):
    monkeypatch.delenv(PIPELINE_ENV, raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert progress_enabled() and not progress_enabled(False)
    assert progress_bar(range(3)).disable is False
    monkeypatch.setenv(PIPELINE_ENV, "04_closed_loop")
    assert not progress_enabled() and progress_bar(range(3)).disable is True
    monkeypatch.delenv(PIPELINE_ENV)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert progress_bar(range(3)).disable is True
    from tqdm.notebook import tqdm as notebook_tqdm  # the class tqdm.auto picks in JupyterLab

    assert notebook_tqdm(range(3), disable=not progress_enabled()).disable is True
