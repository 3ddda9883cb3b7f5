"""The benchmarks and the seed study: diffmine measured, outside the asset
graph or (the seed study) through it. They call the same scoring the assets
call; nothing below them imports them."""
