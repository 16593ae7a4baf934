"""Solution to Tutorial 3, Exercise 3."""


def memory_numbers(h, beta, rho):
    # a channel with decay b spans about b/(1-b) steps; in units of time, h b/(1-b)
    return h * beta / (1 - beta), h * rho / (1 - rho)
