// JupyterLab plugin: the openmind panel in the left sidebar.
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { OpenmindPanel, openmindIcon } from './panel';

const PLUGIN_ID = 'openmind-jupyterlab:plugin';

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'The machine resources and the latest openmind cell decisions, beside the notebook.',
  autoStart: true,
  optional: [ISettingRegistry, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    settingRegistry: ISettingRegistry | null,
    restorer: ILayoutRestorer | null
  ) => {
    const panel = new OpenmindPanel(app);
    panel.id = 'openmind-sidebar';
    panel.title.icon = openmindIcon;
    panel.title.caption = 'openmind: resources and cell decisions';
    app.shell.add(panel, 'left', { rank: 650 });
    if (restorer) {
      restorer.add(panel, 'openmind-sidebar');
    }
    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          const apply = () =>
            panel.configure({
              intervalSeconds: settings.get('refreshInterval').composite as number,
              resourcesEvery: settings.get('resourcesEvery').composite as number,
              maxDecisions: settings.get('maxDecisions').composite as number
            });
          apply();
          settings.changed.connect(apply);
        })
        .catch(reason => {
          console.warn('openmind: could not load settings, using defaults', reason);
        });
    }
  }
};

export default plugin;
