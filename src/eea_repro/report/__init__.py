"""The final HTML report (``report.smk``): the Jinja2 page (``page``) and the paper-scale cost estimate (``costs``)."""
