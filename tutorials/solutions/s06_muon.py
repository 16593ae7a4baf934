"""Solution to Tutorial 6, Exercise 6."""


def muon_memory_weight(mu, nesterov):
    # Nesterov: u = (1 - mu^2) g + mu^2 buf_old, Lion-K's c with rho1 = mu^2 and rho2 = mu;
    # without Nesterov u = buf, rho1 = mu.  The weight is rho1/(1 - rho2).
    return (mu ** 2 if nesterov else mu) / (1 - mu)
