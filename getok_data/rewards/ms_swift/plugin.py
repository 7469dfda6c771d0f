"""GETok rewards as ms-swift ORMs: ``swift rlhf --rlhf_type grpo --external_plugins PATH/plugin.py
--reward_funcs getok`` (or the components: ``getok_format getok_mask_iou ...``, weighted with
``--reward_weights``). The file's path (it imports ms-swift, so ask without importing it):
``python -c "import getok_data, pathlib; print(pathlib.Path(getok_data.__file__).parent / 'rewards/ms_swift/plugin.py')"``.

ms-swift (``swift/rl_core/grpo_algorithm.py``) calls each reward ``reward(completions, **columns)``
with the dataset's columns batched (``RowPreprocessor.rows_to_batched``) and ``trainer_state``:
the exported reward columns of ``getok-data export swift`` reach ``getok_data.rewards.trl`` as is.
ms-swift 4 keeps ORMs in ``swift.rewards``, ms-swift 3 in ``swift.plugin``.
"""
from __future__ import annotations

from typing import Any

try:
    from swift.rewards import ORM, orms
except ImportError:  # ms-swift 3.x
    from swift.plugin import ORM, orms

from getok_data.rewards import trl as R


class GetokReward(ORM):
    """The weighted total of every GETok component (the row's stage's default weights)."""

    def __call__(self, completions: list, **kwargs: Any) -> list[float]:
        return R.getok_reward(None, completions, **kwargs)


def _component(fn):
    class Component(ORM):
        def __call__(self, completions: list, **kwargs: Any) -> list[float]:
            return fn(None, completions, **kwargs)

    Component.__name__ = Component.__qualname__ = f"Getok_{fn.__name__}"
    return Component


orms["getok"] = GetokReward
for _spec in R.REWARDS:  # getok_format, getok_mask_iou, getok_points_f1, ... (names of rewards/table.py)
    orms[f"getok_{_spec.key}"] = _component(R._PLAIN[_spec.name])
