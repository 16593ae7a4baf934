"""Solution to Tutorial 1, Exercise 1."""


def my_correction(beta, h, g, Hg):
    # sum_k k beta^k = beta/(1-beta)^2 and F = g/(1-beta):  M = h beta/(1-beta)^3 H g
    return h * beta / (1 - beta) ** 3 * Hg
