"""Safe checkpoint reading: mmengine checkpoints round-trip, malicious pickles are refused."""

from __future__ import annotations

import functools
import http.server
import pickle
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from ropevit_dense.checkpoints import CheckpointError, UnsafeCheckpointError, allow_mmengine_checkpoints, load_file
from ropevit_dense.checkpoints.io import url_cache_path


class _Evil:
    """Unpickling this would create a file (the marker) by calling ``open``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "payload": _Evil(marker)}, path)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError) as info:
        load_file(path)
    message = str(info.value)
    assert "refusing to load" in message and str(path) in message
    assert "io.open" in message  # the global the payload would call
    assert not marker.exists(), "unpickling ran code"
    # the user's file is left as it was
    assert path.exists()


def test_missing_and_corrupt_files_name_the_problem(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_file(tmp_path / "nope.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt or not a torch file"):
        load_file(corrupt)
    truncated = tmp_path / "truncated.pth"
    torch.save({"w": torch.randn(100)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_file(truncated)
    with pytest.raises(CheckpointError, match="not a file"):
        load_file(tmp_path)


def test_plain_state_dict_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    sd = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    torch.save({"model": sd}, tmp_path / "naver.bin")
    got = load_file(tmp_path / "naver.bin")
    assert torch.equal(got["model"]["a"], sd["a"])
    save_file(sd, str(tmp_path / "m.safetensors"))
    got = load_file(tmp_path / "m.safetensors")
    assert torch.equal(got["b"], sd["b"])


def test_http_url_download(tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    sd = {"w": torch.randn(4)}
    torch.save(sd, served / "weights.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/weights.pth"
        got = load_file(url)
        assert torch.equal(got["w"], sd["w"])
        cached = url_cache_path(url)
        assert cached.exists() and cached.name == "weights.pth"
        assert cached.parent.parent == tmp_path / "torch_home" / "hub" / "checkpoints"
        with pytest.raises(CheckpointError, match="cannot download"):
            load_file(f"http://127.0.0.1:{server.server_address[1]}/missing.pth")
    finally:
        server.shutdown()


def test_urls_with_the_same_file_name_are_cached_apart(tmp_path, monkeypatch):
    """Two hub repositories' ``.../resolve/main/pytorch_model.bin`` must not share one cached file."""
    served = tmp_path / "served"
    weights = {}
    for repo in ("owner/a", "owner/b"):
        folder = served / repo / "resolve" / "main"
        folder.mkdir(parents=True)
        weights[repo] = {"w": torch.randn(4)}
        torch.save(weights[repo], folder / "pytorch_model.bin")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        for repo in ("owner/a", "owner/b", "owner/a"):
            got = load_file(f"{base}/{repo}/resolve/main/pytorch_model.bin")
            assert torch.equal(got["w"], weights[repo]["w"]), repo
        paths = {url_cache_path(f"{base}/{repo}/resolve/main/pytorch_model.bin") for repo in ("owner/a", "owner/b")}
        assert len(paths) == 2 and all(p.exists() for p in paths)
    finally:
        server.shutdown()


def test_bad_hub_id():
    with pytest.raises(CheckpointError, match="bad hub id"):
        load_file("hf://only-owner")


# --- mmengine training checkpoints ------------------------------------------------------------------------------

class _ToyDataset(torch.utils.data.Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, index):
        g = torch.Generator().manual_seed(index)
        return {"inputs": torch.randn(4, generator=g), "target": torch.randn(1, generator=g)}


def _toy_model():
    from mmengine.model import BaseModel

    class ToyModel(BaseModel):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 1)

        def forward(self, inputs, target, mode="tensor"):
            out = self.linear(inputs)
            if mode == "loss":
                return {"loss": nn.functional.mse_loss(out, target)}
            return out

    return ToyModel()


def _runner(work_dir: Path, max_iters: int, **kwargs):
    from mmengine.runner import Runner

    return Runner(
        model=_toy_model(),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=_ToyDataset(), sampler=dict(type="DefaultSampler", shuffle=True),
                              batch_size=4, collate_fn=dict(type="default_collate")),
        optim_wrapper=dict(optimizer=dict(type="AdamW", lr=0.01)),
        param_scheduler=dict(type="MultiStepLR", milestones=[2], by_epoch=False),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=2, by_epoch=False),
                           logger=dict(type="LoggerHook", interval=1)),
        default_scope="mmengine",
        **kwargs,
    )


def test_mmengine_checkpoint_round_trips(tmp_path):
    pytest.importorskip("mmengine")
    runner = _runner(tmp_path / "run", max_iters=2)
    runner.train()
    ckpt = tmp_path / "run" / "iter_2.pth"
    assert ckpt.exists()

    # our reader: weights_only with the allowlist
    data = load_file(ckpt)
    assert data["meta"]["iter"] == 2
    assert "message_hub" in data and "log_scalars" in data["message_hub"]
    assert set(data["state_dict"]) == {"linear.weight", "linear.bias"}

    # mmengine's own torch.load calls (test / resume) work once the allowlist is registered
    allow_mmengine_checkpoints()
    allow_mmengine_checkpoints()  # idempotent
    from mmengine.runner import load_checkpoint

    model = _toy_model()
    load_checkpoint(model, str(ckpt), map_location="cpu")
    assert torch.equal(model.linear.weight, data["state_dict"]["linear.weight"])

    resumed = _runner(tmp_path / "run", max_iters=4, resume=True, load_from=str(ckpt))
    resumed.train()
    assert resumed.iter == 4
    assert (tmp_path / "run" / "iter_4.pth").exists()
    assert load_file(tmp_path / "run" / "iter_4.pth")["meta"]["iter"] == 4


class _SneakyGetattr:
    """Reaches for an attribute of an allowed class other than its statistics methods."""

    def __reduce__(self):
        from mmengine.logging.history_buffer import HistoryBuffer

        return (getattr, (HistoryBuffer, "register_statistics"))


def test_getattr_is_limited_to_history_buffer_statistics(tmp_path):
    pytest.importorskip("mmengine")
    path = tmp_path / "sneaky.pth"
    torch.save({"x": _SneakyGetattr()}, path)
    with pytest.raises(UnsafeCheckpointError, match="refusing to load"):
        load_file(path)


def test_mmengine_test_and_resume_paths_refuse_a_malicious_checkpoint(tmp_path):
    """What `mim test` / `--resume` / `load_from` call (mmengine's `load_checkpoint` and the runner's `resume`)
    refuses a checkpoint whose pickle would run code, with the mmengine allowlist registered."""
    pytest.importorskip("mmengine")
    from mmengine.runner import load_checkpoint

    allow_mmengine_checkpoints()
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "iter_2.pth"
    torch.save({"meta": {"iter": 2}, "state_dict": {"linear.weight": torch.zeros(1, 2)}, "payload": _Evil(marker)},
               path)
    with pytest.raises(pickle.UnpicklingError, match="open"):
        load_checkpoint(_toy_model(), str(path), map_location="cpu")
    runner = _runner(tmp_path / "run", max_iters=2)
    with pytest.raises(pickle.UnpicklingError, match="open"):
        runner.resume(str(path))
    assert not marker.exists(), "unpickling ran code"
