"""The TARS SFT warm start: verl's SFT trainer plus early stopping on validation loss.

    torchrun --standalone --nproc_per_node=8 -m tars_verl.training.sft model.path=Qwen/Qwen2.5-7B-Instruct \\
        data.train_files=data/sft/sft_train.parquet data.val_files=data/sft/sft_val.parquet \\
        trainer.default_local_dir=checkpoints/tars_sft_7b

The config is ``tars_verl/config/tars_sft.yaml`` (verl's ``sft_trainer_engine`` + the paper's
lightweight settings + ``tars_sft.*``). verl's trainer has no early-stopping hook, so this entry
point builds verl's ``SFTTrainer`` and watches it through ``verl_workarounds.watch_sft_trainer``
(workaround ``sft_early_stopping``: validation losses in, after each save compare, record, stop),
without copying or patching verl. The result is
``<default_local_dir>/tars_early_stopping.json`` (history, best step) and a ``best`` link to the
best ``global_step_N`` folder; its ``huggingface/`` sub-folder is what the RL stage loads.
"""

from __future__ import annotations

import json
import logging
import os

import hydra
import torch
import torch.distributed as dist

from tars_verl.training.data_files import missing_data_files
from tars_verl.verl_workarounds import StopSFTFit, fit_sft, init_sft_process_group, watch_sft_trainer

logger = logging.getLogger(__name__)


class EarlyStop(StopSFTFit):
    """Raised from inside verl's training loop to end it after a checkpoint."""


class EarlyStopping:
    def __init__(self, trainer, patience: int, min_delta: float, out_dir: str):
        if patience < 1:
            raise ValueError(f"tars_sft.patience must be >= 1, got {patience}")
        self.trainer, self.patience, self.min_delta, self.out_dir = trainer, patience, min_delta, out_dir
        self.history: list[dict] = []
        self.best_step: int | None = None
        self.best_loss = float("inf")
        self.bad_validations = 0
        self._pending: list[float] = []
        watch_sft_trainer(trainer, self._pending.append, self.after_checkpoint)

    def after_checkpoint(self, step: int) -> None:
        if not self._pending:
            return  # a rank that holds no model outputs (verl reads losses on output ranks only)
        loss = torch.tensor(sum(self._pending) / len(self._pending), dtype=torch.float64)
        self._pending.clear()  # the same list watch_sft_trainer appends to
        if dist.is_initialized() and dist.get_world_size() > 1:  # every rank must take the same decision
            dist.all_reduce(loss, op=dist.ReduceOp.SUM)
            loss /= dist.get_world_size()
        loss = float(loss)
        improved = loss < self.best_loss - self.min_delta
        if improved:
            self.best_loss, self.best_step, self.bad_validations = loss, step, 0
        else:
            self.bad_validations += 1
        self.history.append({"step": step, "val_loss": loss, "best": improved})
        self.write()
        if self.bad_validations >= self.patience:
            raise EarlyStop(
                f"validation loss did not improve for {self.patience} validation(s); best step "
                f"{self.best_step} (val loss {self.best_loss:.4f})"
            )

    def write(self) -> None:
        if dist.is_initialized() and dist.get_rank() != 0:
            return
        best_dir = os.path.join(self.out_dir, f"global_step_{self.best_step}") if self.best_step else None
        record = {
            "best_step": self.best_step,
            "best_val_loss": self.best_loss,
            "best_dir": best_dir,
            "best_hf_model": os.path.join(best_dir, "huggingface") if best_dir else None,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "history": self.history,
        }
        os.makedirs(self.out_dir, exist_ok=True)
        tmp = os.path.join(self.out_dir, ".tars_early_stopping.json.tmp")
        with open(tmp, "w") as f:
            json.dump(record, f, indent=2)
        os.replace(tmp, os.path.join(self.out_dir, "tars_early_stopping.json"))
        if best_dir:
            link = os.path.join(self.out_dir, "best")
            tmp_link = link + ".tmp"
            if os.path.lexists(tmp_link):
                os.unlink(tmp_link)
            os.symlink(os.path.basename(best_dir), tmp_link)
            os.replace(tmp_link, link)


def config_problems(config) -> list[str]:
    """Every problem the SFT entry point stops on before any model is loaded: missing data files, then early-stopping
    settings that cannot work. ``--dry-run`` lists these same lines."""
    return missing_data_files(config, "sft") + early_stopping_problems(config)


def early_stopping_problems(config) -> list[str]:
    es = config.get("tars_sft", {})
    if not es.get("early_stopping", False):
        return []
    problems = []
    if not config.data.get("val_files"):
        problems.append("tars_sft.early_stopping needs data.val_files (a validation loss to watch)")
    if config.trainer.get("max_ckpt_to_keep") is not None:
        problems.append("tars_sft.early_stopping keeps every checkpoint: set trainer.max_ckpt_to_keep=null")
    if config.trainer.test_freq != config.trainer.save_freq:
        problems.append(
            "tars_sft.early_stopping needs trainer.test_freq == trainer.save_freq "
            f"(got {config.trainer.test_freq} and {config.trainer.save_freq})"
        )
    return problems


def check_config(config) -> None:
    """Fail before any model is loaded, with every problem of :func:`config_problems`, one per line
    (FileNotFoundError when a data file is missing, else ValueError)."""
    missing = missing_data_files(config, "sft")
    problems = missing + early_stopping_problems(config)
    if problems:
        raise (FileNotFoundError if missing else ValueError)("\n".join(problems))


def run_sft(config) -> dict | None:
    from verl.trainer.sft_trainer import SFTTrainer

    check_config(config)
    init_sft_process_group()
    try:
        trainer = SFTTrainer(config=config)
        es = config.get("tars_sft", {})
        stopper = None
        if es.get("early_stopping", False):
            stopper = EarlyStopping(
                trainer, int(es.get("patience", 1)), float(es.get("min_delta", 0.0)), config.trainer.default_local_dir
            )
        stopped = fit_sft(trainer)
        if stopped is not None and dist.get_rank() == 0:
            print(f"[tars_sft] early stop: {stopped}")
        if stopper is not None and dist.get_rank() == 0:
            print(
                f"[tars_sft] best checkpoint: step {stopper.best_step}, val loss {stopper.best_loss:.4f} -> "
                f"{os.path.join(config.trainer.default_local_dir, 'best')}"
            )
        return None if stopper is None else {"best_step": stopper.best_step, "history": stopper.history}
    finally:
        dist.destroy_process_group()


@hydra.main(config_path="pkg://tars_verl.config", config_name="tars_sft", version_base=None)
def main(config) -> None:
    from verl.utils.device import auto_set_device

    from tars_verl.redaction import install

    install()  # no secret in this process's logs, output or tracebacks
    auto_set_device(config)
    run_sft(config)


if __name__ == "__main__":
    main()
