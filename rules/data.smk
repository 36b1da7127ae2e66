# Data: the embedded procedural dataset, and the split lists that point the loader at images (embedded, ImageNet or a
# plain image folder, src/eea_repro/data/folder.py).

if PLAN.kind == "embedded":

    rule embedded_dataset:
        output:
            classes=PLAN.classes_file,
            labels=expand(
                "results/data/embedded/{split}/labels.txt",
                split=["train", "val", "test", "two_object"],
            ),
        log:
            "logs/data/embedded_dataset.log",
        benchmark:
            "benchmarks/data/embedded_dataset.tsv"
        conda:
            "../envs/report.yaml"
        threads: 4  # images are rendered and written in parallel (each from its own random stream)
        params:
            settings=config["dataset"]["embedded"],
            seed=config["seed"],
        script:
            "../scripts/make_embedded_dataset.py"

    rule split_lists:
        input:
            labels=expand(
                "results/data/embedded/{split}/labels.txt",
                split=["train", "val", "test", "two_object"],
            ),
        output:
            expand(
                "results/data/splits/{split}.txt",
                split=["train", "val", "explainer_train", "explainer_val", "test", "two_object"],
            ),
        log:
            "logs/data/split_lists.log",
        conda:
            "../envs/report.yaml"
        params:
            kind="embedded",
            explainer=config["explainer"],
            seed=config["seed"],
        script:
            "../scripts/make_split_lists.py"

elif PLAN.kind == "folder":

    rule split_lists:
        output:
            **({"augmented": directory(FOLDER_AUGMENTED)} if config["dataset"]["folder"]["augment"] else {}),
            **({"masks": directory(FOLDER_MASKS)} if config["dataset"]["folder"]["boxes"] else {}),
            lists=expand(
                "results/data/splits/{split}.txt",
                split=["explainer_train", "explainer_val", "test"],
            ),
            classes=PLAN.classes_file,
            labels=FOLDER_LABELS,
            skipped="results/data/skipped_images.csv",
            skipped_summary="results/data/skipped_images.json",
        log:
            "logs/data/split_lists.log",
        conda:
            "../envs/report.yaml"
        threads: 4  # images are decoded once here to check them
        params:
            kind="folder",
            folder=config["dataset"]["folder"],
            eval_count=PLAN.n_eval,
            on_bad_image=config["dataset"]["on_bad_image"],
            explainer=config["explainer"],
            seed=config["seed"],
        script:
            "../scripts/make_split_lists.py"

else:

    rule split_lists:
        input:
            labels=config["imagenet_labels"],
        output:
            lists=expand(
                "results/data/splits/{split}.txt",
                split=["explainer_train", "explainer_val", "test"],
            ),
            classes=PLAN.classes_file,
            skipped="results/data/skipped_images.csv",
            skipped_summary="results/data/skipped_images.json",
        log:
            "logs/data/split_lists.log",
        conda:
            "../envs/report.yaml"
        threads: 4  # images are decoded once here to check them
        params:
            kind="imagenet",
            image_dir=PLAN.image_root,
            counts=config["dataset"]["imagenet"],
            on_bad_image=config["dataset"]["on_bad_image"],
            explainer=config["explainer"],
            seed=config["seed"],
        script:
            "../scripts/make_split_lists.py"
