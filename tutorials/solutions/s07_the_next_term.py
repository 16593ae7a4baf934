"""Solution to Tutorial 7, Exercise 7."""


def second_order_correction(beta, h, HHg, Tgg):
    # M1 = h c1 H F with c1 = beta/(1-beta)^2, F = g/(1-beta); A = c1 H, B = c2 H (c2 = beta/(1-beta)^3),
    # C[F] = s2 T[F, F]/2 (s2 = beta(1+beta)/(1-beta)^3).  Collecting:
    #   M2 = h^2 beta(1+beta)/(1-beta)^5 (H^2 g + T[g, g]/2)
    return h ** 2 * beta * (1 + beta) / (1 - beta) ** 5 * (HHg + 0.5 * Tgg)
