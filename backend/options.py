"""Options of one reconstruction job, shared by the CLI, the service and the pipeline."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Literal

Quality = Literal["fast", "default", "best"]
QUALITIES: tuple[str, ...] = ("fast", "default", "best")


@dataclass
class ReconstructOptions:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    flame: str | None = None  # FLAME .pkl / .npz; None = weights/ pickle or the dev model
    assets: str | None = None  # assets folder; None = $HEADRECON_ASSETS or ../shared/assets
    quality: Quality = "default"
    detail: bool = True  # UV displacement stage
    texture: bool = True  # texture / albedo stages
    max_side: int = 1024  # the photo is downscaled to this for fitting
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ReconstructOptions":
        """Build options from untrusted JSON; unknown keys or bad values raise ValueError."""
        if not isinstance(data, dict):
            raise ValueError("options must be a JSON object")
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown option(s): {', '.join(sorted(unknown))}")
        opts = cls(**data)
        if opts.quality not in QUALITIES:
            raise ValueError(f"quality must be one of {', '.join(QUALITIES)}")
        if not isinstance(opts.device, str) or not (
            opts.device in ("auto", "cpu", "cuda") or opts.device.startswith("cuda:")
        ):
            raise ValueError("device must be auto, cpu, cuda or cuda:N")
        if not isinstance(opts.max_side, int) or not 64 <= opts.max_side <= 4096:
            raise ValueError("max_side must be an integer in 64..4096")
        return opts


# progress(stage_name, fraction_of_whole_job in [0, 1], message)
ProgressFn = Callable[[str, float, str], None]
# cancel() -> True when the job must stop (checked between iterations)
CancelFn = Callable[[], bool]
