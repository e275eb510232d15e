"""Default hooks of the framework images (what SageMaker's scikit-learn and XGBoost containers do).

Imported only inside ``load_runtime``: each module pulls in its heavy framework.
"""
