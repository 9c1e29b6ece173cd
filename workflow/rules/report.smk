# Tables and plots of the whole grid (`hdl aggregate`), run on the submitting machine.
localrules:
    write_grid,
    aggregate,


rule write_grid:
    output:
        layout.GRID,
    log:
        layout.job_log("write_grid"),
    params:
        # the cells themselves, so that a changed grid rewrites the file
        cells=CELLS.to_dict("records"),
    run:
        hdl.workflow.write_grid(CELLS, output[0], log[0])


rule aggregate:
    input:
        grid=layout.GRID,
        stage1=for_every_cell(f"{STAGE1}/{layout.METRICS}"),
        hdl=for_every_cell(f"{STAGE2}/{layout.METRICS}", round=ROUNDS, variant="hdl"),
        baseline=for_every_cell(f"{STAGE2}/{layout.METRICS}", round=ROUNDS, variant="baseline"),
        relabel=[
            report_path
            for round_number in range(1, ROUNDS + 1)
            for report_path in for_every_cell(f"{ROUND}/{layout.RELABEL_REPORT}", round=round_number)
        ],
    output:
        accuracy=report(
            f"{layout.TABLES}/accuracy.csv",
            caption="../report/accuracy.rst",
            category="Tables",
            labels={"table": "accuracy"},
        ),
        accuracy_md=f"{layout.TABLES}/accuracy.md",
        accuracy_tex=f"{layout.TABLES}/accuracy.tex",
        pseudo_labels=report(
            f"{layout.TABLES}/pseudo_labels.csv",
            caption="../report/pseudo_labels.rst",
            category="Tables",
            labels={"table": "pseudo-labels"},
        ),
        pseudo_labels_md=f"{layout.TABLES}/pseudo_labels.md",
        per_class=report(
            f"{layout.TABLES}/per_class.csv",
            caption="../report/per_class.rst",
            category="Tables",
            labels={"table": "per-class accuracy"},
        ),
        per_class_md=f"{layout.TABLES}/per_class.md",
        probe=report(
            f"{layout.TABLES}/probe.csv",
            caption="../report/probe_table.rst",
            category="Tables",
            labels={"table": "label probe"},
        ),
        probe_md=f"{layout.TABLES}/probe.md",
        accuracy_plot=report(
            f"{layout.PLOTS}/accuracy.png",
            caption="../report/accuracy.rst",
            category="Plots",
            labels={"figure": "accuracy"},
        ),
        hdl_gain_plot=report(
            f"{layout.PLOTS}/hdl_gain.png",
            caption="../report/hdl_gain.rst",
            category="Plots",
            labels={"figure": "HDL gain"},
        ),
        pseudo_label_plot=report(
            f"{layout.PLOTS}/pseudo_label_accuracy.png",
            caption="../report/pseudo_label_accuracy.rst",
            category="Plots",
            labels={"figure": "pseudo-label accuracy"},
        ),
        curves_plot=report(
            f"{layout.PLOTS}/training_curves.png",
            caption="../report/training_curves.rst",
            category="Plots",
            labels={"figure": "training curves"},
        ),
        probe_plot=report(
            f"{layout.PLOTS}/probe_accuracy.png",
            caption="../report/probe_accuracy.rst",
            category="Plots",
            labels={"figure": "pseudo-label accuracy through training"},
        ),
        # always written: it says "no label refreshes" where hdl.refresh_every is 0
        refresh_plot=report(
            f"{layout.PLOTS}/refresh.png",
            caption="../report/refresh.rst",
            category="Plots",
            labels={"figure": "label refreshes"},
        ),
    log:
        layout.job_log("aggregate"),
    conda:
        HDL_ENV
    params:
        runs_dir=lambda wildcards, input: layout.RUNS,
        out_dir=lambda wildcards, output: layout.RESULTS,  # tables/ and plots/ go here
    shell:
        "hdl aggregate --runs-dir {params.runs_dir} --grid {input.grid} --out-dir {params.out_dir} > {log} 2>&1"
