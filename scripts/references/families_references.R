## Reference fits for bayesmlm's new families (tests/test_families_reference.py).
##
## Run from the repository root:  Rscript scripts/references/families_references.R
## Needs R with lme4, MASS, ordinal and jsonlite (Debian: r-cran-lme4 r-cran-ordinal r-cran-jsonlite).
##   1. glmer.nb (lme4: NB2, var = mu + mu^2 / theta, theta estimated) on the shipped grouseticks;
##   2. ordinal::clmm (cumulative logit, Laplace) on ordinal's wine data, exported to
##      bayesmlm/data/wine.csv (Randall 1989, via the R package ordinal);
##   3. clmm with the probit link on wine, and with a correlated random slope (logit) on ordinal's soup
##      (Christensen and Brockhoff 2013), exported to tests/reference/soup.csv; both at a tight outer
##      tolerance (nlminb rel.tol 1e-12) so that the optimum, not the optimiser's stop, is the reference.
suppressPackageStartupMessages({
  library(lme4)
  library(MASS)
  library(ordinal)
  library(jsonlite)
})
invisible(Sys.setlocale("LC_COLLATE", "C"))

coef_list <- function(est, se) {
  out <- lapply(seq_along(est), function(i) list(estimate = unname(est[i]), se = unname(se[i])))
  names(out) <- names(est)
  out
}

## 1. glmer.nb on grouseticks (cHEIGHT: altitude centred, as shipped)
g <- read.csv("bayesmlm/data/grouseticks.csv", colClasses = c(INDEX = "character", BROOD = "character",
                                                               YEAR = "character", LOCATION = "character"))
for (v in c("BROOD", "YEAR", "LOCATION")) g[[v]] <- factor(g[[v]], levels = sort(unique(g[[v]])))
call_nb <- "glmer.nb(TICKS ~ YEAR + cHEIGHT + (1 | LOCATION), data = grouseticks)"
nb <- glmer.nb(TICKS ~ YEAR + cHEIGHT + (1 | LOCATION), data = g)
cf <- summary(nb)$coefficients
vc <- as.data.frame(VarCorr(nb))
write_json(list(
  dataset = "grouseticks", call = call_nb,
  lme4_version = as.character(packageVersion("lme4")), R_version = paste(R.version$major, R.version$minor, sep = "."),
  family = "negbinomial", n_obs = nobs(nb),
  fixef = coef_list(cf[, 1], cf[, 2]),
  sd = list(`LOCATION:(Intercept)` = vc$sdcor[1]),
  phi = getME(nb, "glmer.nb.theta"),
  logLik = as.numeric(logLik(nb))
), "tests/reference/grouseticks_nb.json", auto_unbox = TRUE, digits = NA, pretty = TRUE)

## 2. clmm on wine
data(wine, package = "ordinal")
w <- data.frame(response = wine$response, rating = as.integer(as.character(wine$rating)),
                temp = as.character(wine$temp), contact = as.character(wine$contact),
                bottle = as.character(wine$bottle), judge = as.character(wine$judge))
write.csv(w, "bayesmlm/data/wine.csv", row.names = FALSE)
w <- read.csv("bayesmlm/data/wine.csv", colClasses = c(temp = "character", contact = "character",
                                                        bottle = "character", judge = "character"))
w$rating <- factor(w$rating, levels = 1:5, ordered = TRUE)
for (v in c("temp", "contact", "judge")) w[[v]] <- factor(w[[v]], levels = sort(unique(w[[v]])))
call_clmm <- "clmm(rating ~ temp + contact + (1 | judge), data = wine, link = 'logit')"
cm <- clmm(rating ~ temp + contact + (1 | judge), data = w, link = "logit")
s <- summary(cm)$coefficients
beta <- cm$beta
theta <- cm$alpha
names(theta) <- sub("\\|", "|", names(theta))
write_json(list(
  dataset = "wine", call = call_clmm,
  ordinal_version = as.character(packageVersion("ordinal")), R_version = paste(R.version$major, R.version$minor, sep = "."),
  family = "cumulative", link = "logit", n_obs = nrow(w),
  fixef = coef_list(beta, s[names(beta), 2]),
  thresholds = coef_list(theta, s[names(cm$alpha), 2]),
  sd = list(`judge:(Intercept)` = unname(sqrt(unlist(VarCorr(cm))))),
  logLik = as.numeric(logLik(cm))
), "tests/reference/wine_clmm.json", auto_unbox = TRUE, digits = NA, pretty = TRUE)

clmm_json <- function(cm, dataset, call, link, file) {
  s <- summary(cm)$coefficients
  vc <- VarCorr(cm)[[1]]
  sds <- attr(vc, "stddev")
  grp <- names(VarCorr(cm))[1]
  sd <- as.list(unname(sds))
  names(sd) <- paste0(grp, ":", names(sds))
  out <- list(
    dataset = dataset, call = call,
    ordinal_version = as.character(packageVersion("ordinal")), R_version = paste(R.version$major, R.version$minor, sep = "."),
    family = "cumulative", link = link, n_obs = nobs(cm),
    fixef = coef_list(cm$beta, s[names(cm$beta), 2]),
    thresholds = coef_list(cm$alpha, s[names(cm$alpha), 2]),
    sd = sd,
    logLik = as.numeric(logLik(cm)),
    max_grad = max(abs(cm$gradient))
  )
  if (length(sds) > 1) out$cor <- attr(vc, "correlation")[2, 1]
  write_json(out, file, auto_unbox = TRUE, digits = NA, pretty = TRUE)
}

## 3a. probit on wine
call_probit <- "clmm(rating ~ temp + contact + (1 | judge), data = wine, link = 'probit', control = clmm.control(rel.tol = 1e-12))"
cp <- clmm(rating ~ temp + contact + (1 | judge), data = w, link = "probit", control = clmm.control(rel.tol = 1e-12))
clmm_json(cp, "wine", call_probit, "probit", "tests/reference/wine_clmm_probit.json")

## 3b. a correlated random slope on soup (1847 ratings of 185 respondents)
data(soup, package = "ordinal")
write.csv(data.frame(SURENESS = as.integer(as.character(soup$SURENESS)), PROD = as.character(soup$PROD),
                     RESP = as.character(soup$RESP)), "tests/reference/soup.csv", row.names = FALSE)
sp <- read.csv("tests/reference/soup.csv", colClasses = c(PROD = "character", RESP = "character"))
sp$SURENESS <- factor(sp$SURENESS, levels = 1:6, ordered = TRUE)
sp$PROD <- factor(sp$PROD, levels = c("Ref", "Test"))
sp$RESP <- factor(sp$RESP, levels = sort(unique(sp$RESP)))
call_soup <- "clmm(SURENESS ~ PROD + (1 + PROD | RESP), data = soup, link = 'logit', control = clmm.control(rel.tol = 1e-12))"
cs <- clmm(SURENESS ~ PROD + (1 + PROD | RESP), data = sp, link = "logit", control = clmm.control(rel.tol = 1e-12))
clmm_json(cs, "soup", call_soup, "logit", "tests/reference/soup_clmm_slope.json")
cat("wrote tests/reference/grouseticks_nb.json, wine_clmm.json, wine_clmm_probit.json, soup_clmm_slope.json and soup.csv\n")
