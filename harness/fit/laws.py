"""Published scaling laws, for overlays and side-by-side comparison (plain data, no I/O).

Losses are in nats per token on each paper's own data and tokenizer, so compare shapes and
exponents across papers, not absolute losses with our runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Law:
    name: str
    source: str
    n_convention: str  # "total" or "nonembed": which N the law was fitted with
    E: float | None = None
    A: float | None = None
    B: float | None = None
    alpha: float | None = None
    beta: float | None = None
    # Kaplan et al. (2020) eq. 1.5: L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D
    kaplan: dict | None = None

    def predict(self, N, D):
        N, D = np.asarray(N, float), np.asarray(D, float)
        if self.kaplan:
            k = self.kaplan
            return ((k["N_c"] / N) ** (k["alpha_N"] / k["alpha_D"]) + k["D_c"] / D) ** k["alpha_D"]
        return self.E + self.A / N**self.alpha + self.B / D**self.beta

    @property
    def chinchilla_form(self) -> bool:
        return self.kaplan is None


PUBLISHED = {
    "hoffmann2022": Law("Hoffmann et al. 2022 (approach 3, as printed)", "arXiv:2203.15556 eq. 10",
                        "total", E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28),
    # Epoch took these from the paper's TeX source: log A, log B, log E = 6.0073404, 6.0179186,
    # 0.5267228 (Besiroglu et al. 2024, arXiv:2404.10102, sec. 2).
    "hoffmann2022_unrounded": Law("Hoffmann et al. 2022 (approach 3, unrounded)",
                                  "arXiv:2203.15556 TeX source via arXiv:2404.10102", "total",
                                  E=float(np.exp(0.5267228)), A=float(np.exp(6.0073404)),
                                  B=float(np.exp(6.0179186)), alpha=0.33917084, beta=0.2849083),
    "epoch2024": Law("Besiroglu et al. 2024 (Epoch AI replication)", "arXiv:2404.10102 eq. 3",
                     "total", E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658),
    # Table 2's joint fit of eq. 1.5. The single-variable fits of eqs. 1.1-1.2 (alpha_D 0.095,
    # N_c 8.8e13, D_c 5.4e13) are a different law and do not belong here.
    "kaplan2020": Law("Kaplan et al. 2020 L(N, D)", "arXiv:2001.08361 eq. 1.5, table 2",
                      "nonembed", kaplan={"alpha_N": 0.076, "alpha_D": 0.103,
                                          "N_c": 6.4e13, "D_c": 1.8e13}),
}
