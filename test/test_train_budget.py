"""``hnseg train --minutes-per-fold``: epochs stay, iterations per epoch are re-fitted to the deadline."""

from __future__ import annotations

import time

from hnseg.training.train import fit_iterations_to_deadline


class FakeTrainer:
    """nnU-Net's run_training loop shape: on_epoch_start, N train steps, on_epoch_end (advances)."""

    def __init__(self, epochs: int, iterations: int, step_s: float):
        self.num_epochs, self.num_iterations_per_epoch, self.current_epoch = epochs, iterations, 0
        self.step_s = step_s
        self.lengths: list[int] = []

    def on_epoch_start(self):
        pass

    def on_epoch_end(self):
        self.current_epoch += 1

    def run_training(self):
        for _ in range(self.current_epoch, self.num_epochs):
            self.on_epoch_start()
            n = self.num_iterations_per_epoch
            self.lengths.append(n)
            time.sleep(n * self.step_s)
            self.on_epoch_end()


def test_iterations_refit_to_end_on_time():
    t = FakeTrainer(epochs=5, iterations=4, step_s=0.01)  # 5 × 4 × 10 ms = 0.2 s unbudgeted
    fit_iterations_to_deadline(t, time.time() + 1.0, min_iterations=1)
    t.run_training()
    assert t.current_epoch == 5 and len(t.lengths) == 5  # epochs (the LR schedule) unchanged
    assert t.lengths[0] == 4 and all(n > 10 for n in t.lengths[1:]), t.lengths  # stretched to the budget
    # the planned work fits the budget (nominal step time; a loaded machine only plans less, so no
    # wall-clock window is asserted)
    assert sum(t.lengths) * t.step_s <= 1.0 + 1e-9, t.lengths
    assert t.hnseg_iterations_done == sum(t.lengths)


def test_iterations_shrink_but_not_below_the_floor():
    t = FakeTrainer(epochs=4, iterations=30, step_s=0.01)  # first epoch alone overruns the budget
    fit_iterations_to_deadline(t, time.time() + 0.2, min_iterations=3)
    t.run_training()
    assert t.lengths == [30, 3, 3, 3], t.lengths
