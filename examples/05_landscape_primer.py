"""Tutorial 5: the landscape primer — what one step size does on a loss surface.

After Goh's "Why Momentum Really Works" and the classic lecture notes, with the real `torch.optim`
optimizers run by `lrkit.landscape.descend`:
1. gradient descent on a quadratic bowl with curvatures 1 and 10 converges iff alpha * lambda_max < 2
   (here alpha < 0.2) and diverges just above;
2. momentum's heavy ball (beta 0.9) converges up to alpha * lambda_max < 2 + 2 beta: at alpha 0.3,
   where plain GD diverges;
3. a saddle: started on its ridge, plain GD walks into the saddle point and stays; SGD's gradient noise
   escapes it;
4. large lrs and flat minima: the blobs MLP trained at a larger lr ends where the loss is flatter
   (lower curvature along filter-normalized random directions, Li et al. 2018);
and it writes the interactive page (`lrkit landscape --html landscape.html` does the same).

Run: `python examples/05_landscape_primer.py [FIGURES_DIR]` (about 15 s on one core).
"""

from __future__ import annotations

import numpy as np
from _tutorial import findings, out_dir, save

import lrkit.lab
from lrkit import landscape

BOWL = landscape.quadratic(eigenvalues=(1.0, 10.0))


def final_loss(optimizer: str, lr: float, steps: int = 200) -> tuple[float, bool]:
    run = landscape.descend(BOWL, optimizer, lr=lr, steps=steps)
    return float(run.losses[-1]), bool(run.diverged)


def main() -> None:
    out = out_dir()
    gd = {lr: final_loss("sgd", lr) for lr in (0.05, 0.19, 0.21)}
    heavy = {lr: final_loss("momentum", lr) for lr in (0.3, 0.4)}
    print("quadratic, curvatures 1 and 10 (GD converges iff lr * 10 < 2):")
    for lr, (loss, diverged) in gd.items():
        print(f"  GD lr {lr}: final loss {loss:.3g}{' (diverged)' if diverged else ''}")
    for lr, (loss, diverged) in heavy.items():
        print(f"  heavy ball (beta 0.9) lr {lr}: final loss {loss:.3g}{' (diverged)' if diverged else ''}  [bound: lr < 0.38]")
    runs = [landscape.descend(BOWL, "sgd", lr=0.19, steps=40), landscape.descend(BOWL, "momentum", lr=0.05, steps=40)]
    save(landscape.plot_trajectories(BOWL, runs, title="GD lr 0.19 and heavy ball lr 0.05"), out, "quadratic.png")

    ridge = (1.0, 0.0)  # on the saddle's stable direction: the exact gradient never leaves it
    still = landscape.descend("saddle", "sgd", lr=0.05, steps=200, start=ridge)
    noisy = landscape.descend("saddle", "sgd", lr=0.05, steps=200, start=ridge, noise=0.01, seed=0)
    stuck, escaped = float(np.abs(still.points[-1]).max()), float(still.losses[-1]) - float(noisy.losses[-1])
    print(f"saddle from {ridge}: plain GD ends {stuck:.2g} from the saddle point; with gradient noise 0.01 the loss ends"
          f" {escaped:.3g} lower (escaped)")  # fmt: skip
    save(landscape.plot_trajectories("saddle", [still, noisy], title="GD and noisy GD on a saddle"), out, "saddle.png")

    blobs = lrkit.lab.get_problem("blobs")
    curvature = {lr: float(np.mean(landscape.net_landscape(blobs, lr, epochs=40, points=9, grid=3, directions=4).curvatures))
                 for lr in (0.01, 0.3)}  # fmt: skip
    print(f"blobs MLP: mean curvature along random filter-normalized directions after 40 epochs: lr 0.01 -> {curvature[0.01]:.3g},"
          f" lr 0.3 -> {curvature[0.3]:.3g}")  # fmt: skip
    page = landscape.write_page(out / "landscape.html", steps=200)
    print(f"interactive page: open {page} in a browser (no network needed)")
    findings({"gd": {str(k): v for k, v in gd.items()}, "heavy_ball": {str(k): v for k, v in heavy.items()},
              "saddle_stuck_distance": stuck, "saddle_noise_gain": escaped,
              "curvature": {str(k): v for k, v in curvature.items()}, "page": str(page)})  # fmt: skip


if __name__ == "__main__":
    main()
