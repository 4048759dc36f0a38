"""Figures for the lab guide: the lr study on blobs (3 seeds, 40 epochs) — accuracy per lr and the sensitivity curve."""

from _figure import save

import lrkit.lab

study = lrkit.lab.study("lr", values=[1.0, 0.1, 0.01, 1e-3, 1e-4], seeds=3, epochs=40)
save(study.plot_curves("acc"), "lab-curves.png")
save(study.plot_sensitivity(), "lab-sensitivity.png")
