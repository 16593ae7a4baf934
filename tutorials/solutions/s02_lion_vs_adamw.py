"""Solution to Tutorial 2, Exercise 2."""


def net_effect(beta1, beta2):
    # first moment: + beta1/(1-beta1) ||grad L||_1 ; second moment: - beta2/(1-beta2) ||grad L||_1
    return "regularizing" if beta1 / (1 - beta1) > beta2 / (1 - beta2) else "anti-regularizing"
