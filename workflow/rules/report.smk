# Tables and plots of the whole grid (`hdl aggregate`), run on the submitting machine.
localrules:
    write_grid,
    aggregate,


rule write_grid:
    output:
        "results/grid.csv",
    log:
        f"{LOGS}/write_grid.log",
    params:
        # the cells themselves, so that a changed grid rewrites the file
        cells=CELLS.dataframe.to_dict("records"),
    run:
        hdl.workflow.write_grid(CELLS.dataframe, output[0], log[0])


rule aggregate:
    input:
        grid="results/grid.csv",
        stage1=expand(f"{CELL}/stage1/metrics.json", zip, **CELLS.dataframe.to_dict("list")),
        hdl=last_round_outputs("variant~hdl/metrics.json"),
        baseline=last_round_outputs("variant~baseline/metrics.json"),
        relabel=[
            report_path
            for round_number in range(1, ROUNDS + 1)
            for report_path in expand(
                f"{CELL}/round~{round_number}/relabel.json", zip, **CELLS.dataframe.to_dict("list")
            )
        ],
    output:
        accuracy=report(
            "results/tables/accuracy.csv",
            caption="../report/accuracy.rst",
            category="Tables",
            labels={"table": "accuracy"},
        ),
        accuracy_md="results/tables/accuracy.md",
        accuracy_tex="results/tables/accuracy.tex",
        pseudo_labels=report(
            "results/tables/pseudo_labels.csv",
            caption="../report/pseudo_labels.rst",
            category="Tables",
            labels={"table": "pseudo-labels"},
        ),
        pseudo_labels_md="results/tables/pseudo_labels.md",
        accuracy_plot=report(
            "results/plots/accuracy.png",
            caption="../report/accuracy.rst",
            category="Plots",
            labels={"figure": "accuracy"},
        ),
        hdl_gain_plot=report(
            "results/plots/hdl_gain.png",
            caption="../report/hdl_gain.rst",
            category="Plots",
            labels={"figure": "HDL gain"},
        ),
        pseudo_label_plot=report(
            "results/plots/pseudo_label_accuracy.png",
            caption="../report/pseudo_label_accuracy.rst",
            category="Plots",
            labels={"figure": "pseudo-label accuracy"},
        ),
        curves_plot=report(
            "results/plots/training_curves.png",
            caption="../report/training_curves.rst",
            category="Plots",
            labels={"figure": "training curves"},
        ),
    log:
        f"{LOGS}/aggregate.log",
    conda:
        HDL_ENV
    params:
        # results/runs next to results/grid.csv; tables/ and plots/ go into results/
        runs_dir=lambda wildcards, input: Path(input.grid).parent / "runs",
        out_dir=lambda wildcards, output: Path(output.accuracy).parents[1],
    shell:
        "hdl aggregate --runs-dir {params.runs_dir} --grid {input.grid} --out-dir {params.out_dir} > {log} 2>&1"
