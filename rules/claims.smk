# The appendix's claims checked against this run's numbers (src/eea_repro/claims/): one verdict per claim and
# subject, thresholds from config `claims:`. Evidence a configuration does not produce makes its claim 'not run', with
# the config key that would produce it.


rule claims:
    input:
        evidence_files(claims_evidence()),
    output:
        report(CLAIMS_OUTPUTS[0], caption="../report/captions/claims.rst", category="Verdicts"),
        *CLAIMS_OUTPUTS[1:],
    log:
        "logs/claims/claims.log",
    conda:
        "../envs/torch.yaml"
    params:
        evidence=claims_evidence(),
        config=config,
    script:
        "../scripts/check_claims.py"
