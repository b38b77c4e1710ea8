# Analysis: regressions with the paper's tables beside them, figures, report captions.

# The committed full-protocol results of this model, whose verdicts summary.md shows beside this
# run's: docs/results/<model slug>/r2.csv of this checkout (locedit.analysis.summary.committed_folder);
# none for a model without committed results.
_COMMITTED_R2 = os.path.join(
    workflow.basedir, "docs", "results", model_slug(config["model"]["name"]), "r2.csv"
)
COMMITTED_R2 = [_COMMITTED_R2] if os.path.exists(_COMMITTED_R2) else []


rule regressions:
    input:
        scores=rules.scores.output[0],
        trace=main_table("mlp", config["editing"]["effect_window"]),
        effects=list(effect_tables().values()),
        committed=COMMITTED_R2,
    output:
        r2=report(
            f"{RUN}/analysis/r2.csv",
            caption="../report/r2.rst",
            category="Regressions",
        ),
        concentrated=report(
            f"{RUN}/analysis/r2_concentrated.csv",
            caption="../report/r2_concentrated.rst",
            category="Regressions",
        ),
        summary=report(
            f"{RUN}/analysis/summary.md",
            caption="../report/summary.rst",
            category="Regressions",
        ),
        localizations=f"{RUN}/analysis/localizations.csv",
        agreement=f"{RUN}/analysis/localization_agreement.csv",
    log:
        f"{LOGS}/regressions.log",
    benchmark:
        f"{BENCH}/regressions.tsv"
    conda:
        "../../envs/locedit.yaml"
    resources:
        **planned("regressions"),
    params:
        correlation_layer=CORRELATION_LAYER,
        effect=ANALYSIS.get("effect", "max_fraction_restored"),
        bootstrap=ANALYSIS.get("bootstrap", 1000),
        localizations=list(effect_tables()),
        model=model_params(),
        run=config["run"],
        effect_window=config["editing"]["effect_window"],
    script:
        "../scripts/regressions.py"


rule figures:
    input:
        scores=rules.scores.output[0],
        r2=rules.regressions.output.r2,
        traces=[main_table("mlp", window) for window in MLP_WINDOWS],
    output:
        fig1=figure("fig1_peak_layer.png", "fig1"),
        fig2=figure("fig2_heatmap.png", "fig2"),
        fig4=figure("fig4_rewrite_vs_tracing.png", "fig4"),
        fig6=figure("fig6_r2_bars.png", "fig6"),
        by_layer_rewrite=figure("fig7_rewrite_by_layer.png", "by_layer"),
        by_layer_paraphrase=figure("fig8_paraphrase_by_layer.png", "by_layer"),
        by_layer_neighborhood=figure("fig9_neighborhood_by_layer.png", "by_layer"),
        by_layer_overall=figure("fig9b_overall_by_layer.png", "by_layer"),
        fig10=figure("fig10_tracing_by_layer.png", "fig10"),
    log:
        f"{LOGS}/figures.log",
    benchmark:
        f"{BENCH}/figures.tsv"
    conda:
        "../../envs/locedit.yaml"
    resources:
        **planned("figures"),
    params:
        windows=MLP_WINDOWS,
        effect_window=config["editing"]["effect_window"],
        n_layers=N_LAYERS,
        correlation_layer=CORRELATION_LAYER,
        heatmap_case=ANALYSIS.get("heatmap_case"),
        effect=ANALYSIS.get("effect", "max_fraction_restored"),
    script:
        "../scripts/figures.py"


rule localization_figures:
    input:
        scores=rules.scores.output[0],
        effects=list(effect_tables().values()),
    output:
        directory(f"{RUN}/analysis/figures/localizations"),
    log:
        f"{LOGS}/localization_figures.log",
    benchmark:
        f"{BENCH}/localization_figures.tsv"
    conda:
        "../../envs/locedit.yaml"
    resources:
        **planned("localization_figures"),
    params:
        localizations=list(effect_tables()),
        effect_window=config["editing"]["effect_window"],
        n_layers=N_LAYERS,
        correlation_layer=CORRELATION_LAYER,
        effect=ANALYSIS.get("effect", "max_fraction_restored"),
    script:
        "../scripts/localization_figures.py"
