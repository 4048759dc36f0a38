"""Figures for the finding guide: the range test on the blobs MLP, and a search_lr over lrs x shapes on the same problem."""

import torch.nn.functional as F
from _figure import save

import lrkit
import lrkit.lab
from lrkit.torch.data import epoch_batches
from lrkit.torch.finder import find_on_problem

save(find_on_problem("blobs", "sgd(momentum=0.9)").plot(), "range-test.png")
problem = lrkit.lab.get_problem("blobs")
train = list(epoch_batches(problem.x_train, problem.y_train, problem.batch_size, seed=0, epochs=1))
result = lrkit.search_lr(problem.make_model, "sgd(momentum=0.9)", F.cross_entropy, train, (problem.x_test, problem.y_test), epochs=10,
                         lrs=[1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0], shapes=("constant", "cosine"), progress=False)  # fmt: skip
save(result.plot(), "search.png")
