"""The paper's user study and Turing test (section 4.5, Table 3's User column, Fig. 9), run with people.

* :mod:`.build`    the study set from the DAG: mp4s of generated and real test clips and a manifest
* :mod:`.server`   ``speechanim study serve``: the participants' web page and its JSON API
* :mod:`.db`       the SQLite file the answers go to, and ``speechanim study export`` (CSV)
* :mod:`.analysis` the answers back into the paper: Table 3's User cells and Fig. 9
"""
