"""Figure for the landscape guide: SGD, momentum and Adam on Rosenbrock, each at its own lr."""

from _figure import save

from lrkit import landscape

runs = [landscape.descend("rosenbrock", "sgd", lr=1e-3, steps=300), landscape.descend("rosenbrock", "momentum", lr=1e-3, steps=300),
        landscape.descend("rosenbrock", "adam", lr=0.05, steps=300)]  # fmt: skip
save(landscape.plot_trajectories("rosenbrock", runs, title="300 steps on Rosenbrock"), "rosenbrock.png")
