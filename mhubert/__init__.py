"""mhubert: pretrain and serve compact multilingual HuBERT models the way mHuBERT-147 did.

Data flows one way: audio → features → labels → model → API. Every stage is a function in this
package and a subcommand of the ``mhubert`` console command.
"""

__version__ = "0.1.0"
