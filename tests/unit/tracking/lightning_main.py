"""A Lightning training process for tests: fits a tiny model on CPU with an MLFlowLogger built as argv[1] says."""

from __future__ import annotations

import sys
import warnings


def main(how: str) -> int:
    # Lightning's advice for real jobs (more dataloader workers, a GPU is available...) is noise for a 4-step fit.
    warnings.filterwarnings("ignore")
    import lightning
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    import runyard
    from runyard.tracking.lightning import mlflow_logger

    class Tiny(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.layer(x), y)
            self.log("lightning_loss", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    runyard.context()
    if how == "runyard":
        logger = mlflow_logger()
    else:  # what a user writes without the recipe
        from lightning.pytorch.loggers import MLFlowLogger

        logger = MLFlowLogger()
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(16, 4), torch.randn(16, 1))
    trainer = lightning.Trainer(
        max_steps=4,
        logger=logger,
        accelerator="cpu",
        devices=1,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Tiny(), DataLoader(data, batch_size=4))
    print(f"logged into {logger.run_id}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
