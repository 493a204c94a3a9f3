"""The attacks pets measures its defences against: what an attacker learns about training data.

One function per threat of docs/threats.md, each on a torch model (or a training
update) and each returning a frozen report with its metric, a confidence
interval where one applies, ``str()`` for a readable line and ``to_dict()``
for JSON:

=========================  ====================================================  ===============
threat                     function                                              metric
=========================  ====================================================  ===============
membership inference       :func:`membership_inference` (loss, LiRA, RMIA)       AUC, TPR at low
                                                                                 FPR, epsilon >=
reconstruction             :func:`gradient_inversion` (analytic, DLG/iDLG)       MSE, PSNR
model inversion            :func:`model_inversion` (Fredrikson et al. 2015)      recognised vs
                                                                                 1 / classes
property inference         :func:`property_inference` (shadow models,            accuracy vs 50%
                           Ganju et al. 2018)
=========================  ====================================================  ===============

``import pets.attacks`` imports no torch; each attack loads it when run.

>>> import numpy as np, pets
>>> update = pets.attacks.clip_and_noise([np.ones(4)], max_grad_norm=1.0, noise_multiplier=0.0)
>>> round(float(np.linalg.norm(update[0])), 6)
1.0
"""

from pets.attacks.inversion import ModelInversionReport, model_inversion
from pets.attacks.membership import membership_inference
from pets.attacks.properties import (
    PropertyInferenceReport,
    class_share_sampler,
    property_inference,
)
from pets.attacks.reconstruction import (
    GradientInversionReport,
    clip_and_noise,
    gradient_inversion,
)
from pets.dp.auditing import AttackResult, AuditReport

__all__ = [
    "AttackResult",
    "AuditReport",
    "GradientInversionReport",
    "ModelInversionReport",
    "PropertyInferenceReport",
    "class_share_sampler",
    "clip_and_noise",
    "gradient_inversion",
    "membership_inference",
    "model_inversion",
    "property_inference",
]
