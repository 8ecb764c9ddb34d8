## lme4 reference fits with weights, for tests/test_weights.py.
##
## Run from the repository root:  Rscript scripts/references/weights_references.R
## Needs R with lme4 and jsonlite. The weights are a deterministic function of
## the row number i (1-based) of the shipped CSV, which the test recomputes:
##   w_i = 0.5 + ((7 i) mod 11) / 10         (0.5 .. 1.5)
## Writes tests/reference/sleepstudy_weighted.json, sleepstudy_weighted_ml.json
## grouseticks_weighted.json and contraception_weighted.json: fixed effects, SDs, correlations, sigma, theta
## and logLik of lme4's fit refitted with tight optimiser tolerances.
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
invisible(Sys.setlocale("LC_COLLATE", "C"))

read_back <- function(name, labels) {
  path <- file.path("bayesmlm/data", paste0(name, ".csv"))
  if (!file.exists(path)) path <- paste0(path, ".gz")
  cls <- setNames(rep("character", length(labels)), labels)
  df <- read.csv(path, colClasses = cls)
  for (v in labels) df[[v]] <- factor(df[[v]], levels = sort(unique(df[[v]])))
  df
}
row_weights <- function(n) 0.5 + ((7 * seq_len(n)) %% 11) / 10

tight_l <- lmerControl(optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14, xtol_rel = 1e-12,
                                      ftol_rel = 1e-14, maxeval = 1e5))
tight_g <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))

reference <- function(fit, dataset, call_text) {
  vc <- as.data.frame(VarCorr(fit))
  sd <- list(); cor <- list()
  for (i in seq_len(nrow(vc))) {
    r <- vc[i, ]
    if (r$grp == "Residual") sd[["Residual"]] <- r$sdcor
    else if (is.na(r$var2)) sd[[paste(r$grp, r$var1, sep = ":")]] <- r$sdcor
    else cor[[paste(r$grp, r$var1, r$var2, sep = ":")]] <- r$sdcor
  }
  cf <- summary(fit)$coefficients
  fixef <- lapply(seq_len(nrow(cf)), function(i) list(estimate = cf[i, 1], se = cf[i, 2]))
  names(fixef) <- rownames(cf)
  out <- list(dataset = dataset, call = call_text,
              weights = "w_i = 0.5 + ((7 i) mod 11) / 10, i = 1..n the row of the shipped CSV",
              lme4_version = as.character(packageVersion("lme4")),
              R_version = paste(R.version$major, R.version$minor, sep = "."),
              family = if (isGLMM(fit)) family(fit)$family else "gaussian",
              n_obs = nobs(fit), REML = isREML(fit), fixef = fixef, sd = sd,
              cor = if (length(cor)) cor else setNames(list(), character(0)),
              sigma = if (isGLMM(fit)) NULL else sigma(fit),
              theta = as.list(getME(fit, "theta")), logLik = as.numeric(logLik(fit)),
              REMLcrit = if (isREML(fit)) REMLcrit(fit) else NULL)
  out <- out[!vapply(out, is.null, logical(1))]
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE),
             file.path("tests/reference", paste0(dataset, ".json")))
  cat(sprintf("%-24s %s\n", dataset, call_text))
}

sleepstudy <- read_back("sleepstudy", "Subject")
sleepstudy$w <- row_weights(nrow(sleepstudy))
reference(lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy, weights = w, control = tight_l),
          "sleepstudy_weighted", "lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy, weights = w, control = tight)")
reference(lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy, weights = w, REML = FALSE, control = tight_l),
          "sleepstudy_weighted_ml",
          "lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy, weights = w, REML = FALSE, control = tight)")

grouse <- read_back("grouseticks", c("INDEX", "BROOD", "YEAR", "LOCATION"))
grouse$w <- row_weights(nrow(grouse))
reference(glmer(TICKS ~ YEAR + cHEIGHT + (1 | LOCATION), family = poisson, data = grouse, weights = w,
                control = tight_g),
          "grouseticks_weighted",
          "glmer(TICKS ~ YEAR + cHEIGHT + (1 | LOCATION), family = poisson, data = grouseticks, weights = w, control = glmerControl(optimizer = 'bobyqa'))")

## Bernoulli rows with integer weights w_i = 1 + (i mod 3): glmer reads weights
## as binomial trials with y as the proportion. Its Laplace criterion uses
## binomial()$aic, which rounds the trials and successes, so only with integer
## weights is it the weighted bernoulli likelihood (with w_i = 0.5 a row would
## drop out; with 1.4 it would count once).
contra <- read_back("contraception", c("woman", "district", "use", "livch", "urban"))
contra$k <- 1 + seq_len(nrow(contra)) %% 3
contra$y <- as.numeric(contra$use == "Y")
reference(glmer(y ~ age + urban + (1 | district), family = binomial, data = contra, weights = k, control = tight_g),
          "contraception_weighted",
          "glmer(y ~ age + urban + (1 | district), family = binomial, data = Contraception, weights = k, control = glmerControl(optimizer = 'bobyqa')), y = use == 'Y', k_i = 1 + (i mod 3)")
