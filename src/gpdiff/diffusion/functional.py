"""A functional loss for the denoiser: score its clean-sample estimate as a forecaster.

The diffusion loss asks the denoiser to reproduce each member's parameters coordinate by
coordinate; two parameter vectors at the same distance from a member can forecast very differently.
The functional loss asks what matters instead: at every training step the denoiser's estimate of the
clean sample (:meth:`~gpdiff.diffusion.schedule.NoiseSchedule.predict_x0`) is decoded into base-model
parameters, loaded into the base model and scored on random *training* windows of the node it stands
for (the masked MAE on scaled values, the zoo's own training loss). The loss added to the diffusion
loss is ``functional_weight * mean_b(alpha_bar(t_b) * mae_b)``: an estimate made from almost pure
noise (small ``alpha_bar``) is not asked to forecast. Generators trained with a loss on what the
generated weights *do* generalise to unseen conditions where reconstruction-trained ones do not
(Text-to-LoRA, Charakorn et al., ICML 2025: hypernetworks trained by the task loss against ones
trained to reconstruct LoRAs; issue 13 of this project).

:class:`FunctionalLoss` holds the source cities' windows (the zoo's split) and the mapping of zoo rows
to (city, node). Only the zoo's training segment is read, never a target's data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from gpdiff.data.city import City
from gpdiff.data.splits import SourceSplit
from gpdiff.data.windows import CityData, WindowConfig
from gpdiff.models import BaseModel, model_from_dict
from gpdiff.models.base import masked_node_mae
from gpdiff.utils.errors import GpdiffError
from gpdiff.zoo.params import ParamCollection, unflatten
from gpdiff.zoo.sourcepool import SourcePool, locate_rows, prepare_cities


class FunctionalLoss:
    """Scores parameter rows of a zoo on their own nodes' training windows.

    ``data``: one :class:`CityData` per source city (the zoo's split); ``cities`` and ``node_ids``
    name every zoo row (``ParamCollection.cities`` / ``node_ids``). Raises :class:`GpdiffError` when
    a row's city or node is not in ``data``.
    """

    def __init__(self, model: BaseModel, data: Sequence[CityData], cities: Sequence[str],
                 node_ids: Sequence[str], windows: int = 8) -> None:
        if windows < 1:
            raise GpdiffError(f"functional_windows must be at least 1, got {windows}.")
        self.model, self.windows = model, int(windows)
        self.spec = model.spec()
        self.pool = SourcePool(list(data), model.config.in_channels)
        self.city_row, self.node_row = locate_rows(list(data), [(str(c), str(n)) for c, n in zip(cities, node_ids)])

    @classmethod
    def for_zoo(cls, zoo: ParamCollection, cities: Sequence[City], windows: int = 8,
                device: torch.device | str = "cpu") -> FunctionalLoss:
        """The functional loss of ``zoo``'s rows (every member's, :meth:`ParamCollection.all_members`:
        the rows the denoiser trains on), on ``cities`` (at least the zoo's own) windowed and split
        exactly as the zoo was trained (its recorded window shape and split fractions)."""
        zoo = zoo.all_members()
        record = zoo.config or {}
        if "window" not in record:
            raise GpdiffError("the zoo does not record its window shape (trained by an older gpdiff); retrain it to "
                              "use the functional loss.")
        by_name = {c.name: c for c in cities}
        missing = [c for c in zoo.city_names() if c not in by_name]
        if missing:
            raise GpdiffError(f"the functional loss scores the zoo's members on their own cities' data, but "
                              f"{missing} were not given; pass every city the zoo was trained on.")
        split = SourceSplit.from_record(record)
        model = model_from_dict(zoo.model, zoo.model_config)
        data = prepare_cities([by_name[c] for c in zoo.city_names()], WindowConfig(**record["window"]), split,
                              model, device)
        return cls(model, data, list(zoo.cities), list(zoo.node_ids), windows)

    def __call__(self, params: torch.Tensor, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Masked MAE ``[B]`` (scaled values) of ``params [B, P]`` (differentiable) on ``windows`` random
        training windows of zoo rows ``rows [B]``, drawn with ``generator`` (CPU)."""
        r = rows.cpu().numpy()
        order = np.lexsort((np.arange(r.size), self.city_row[r]))  # grouped by city, the batch builder's order
        city, node = self.city_row[r[order]], self.node_row[r[order]]
        drawn = [(int(c), torch.from_numpy(node[city == c])) for c in np.unique(city)]
        batch = self.pool.batch(drawn, self.windows, generator)
        idx = torch.from_numpy(order).to(params.device)
        grouped = unflatten(params[idx].to(batch.x.device), self.spec)
        mae = masked_node_mae(self.model.forward(grouped, batch), batch.y, batch.y_mask).to(params.device)
        return torch.empty_like(mae).index_copy(0, idx, mae)  # back to the order of ``rows``
