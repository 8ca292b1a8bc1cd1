"""The progress line: grad norm always, CUDA memory only when CUDA is in use; sinks get every
event even when the screen is quiet."""

from __future__ import annotations

import io

from chatrnn.train.progress import Reporter, cuda_memory


class Recorder:
    def __init__(self):
        self.events = []

    def start(self, description):
        self.events.append(("start", description))

    def step(self, step, loss, lr, grad_norm, rate, unit):
        self.events.append(("step", step, loss, lr, grad_norm, rate, unit))

    def evaluated(self, step, metrics):
        self.events.append(("eval", step, metrics["loss"]))

    def close(self):
        self.events.append(("close",))


def test_plain_line_shows_the_grad_norm():
    out = io.StringIO()
    r = Reporter(rich=False, stream=out, every_s=0)
    r.start("run")
    r.update(3, 0.5, 1.234, 1500.0, "chars", 10.0, grad_norm=0.876, lr=0.01)
    line = out.getvalue().splitlines()[-1]
    assert "step 3 loss 1.234" in line and "gnorm 0.88" in line and "1,500 chars/s" in line
    if cuda_memory() is None:  # a CPU run: no memory figure
        assert " mem " not in line
    else:
        assert " mem " in line


def test_sinks_get_raw_loss_and_evaluations_even_when_quiet():
    rec = Recorder()
    r = Reporter(quiet=True, sinks=[rec])
    r.start("run")
    r.update(1, 0.1, 2.5, 0.0, "tokens", None, grad_norm=3.0, lr=0.001, step_loss=2.7)
    r.update(2, 0.2, 2.4, 10.0, "tokens", None)
    r.evaluated(2, {"loss": 2.2, "perplexity": 9.0}, best=True)
    r.close()
    assert rec.events == [
        ("start", "run"),
        ("step", 1, 2.7, 0.001, 3.0, 0.0, "tokens"),
        ("step", 2, 2.4, None, None, 10.0, "tokens"),
        ("eval", 2, 2.2),
        ("close",),
    ]
